#!/usr/bin/env bash
# Fetches the HAPI FHIR R4 validator (infra/fhir-validator/pom.xml) from Maven Central into
# .stack/fhir-validator/lib and compiles infra/fhir-validator/Validate.java into .stack/fhir-validator/classes.
# Cached: does nothing when both are there and newer than their sources. Needs Java 17 and Maven.
# Run a check: java -cp '.stack/fhir-validator/lib/*:.stack/fhir-validator/classes' Validate FILE_OR_DIR...
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
STACK_DIR="${RESPMON_STACK_DIR:-$ROOT/.stack}"
OUT="$STACK_DIR/fhir-validator"
SRC="$ROOT/infra/fhir-validator"
log() { echo "fhir-validator: $*" >&2; }

if [[ ! -f "$OUT/lib/.complete" || "$SRC/pom.xml" -nt "$OUT/lib/.complete" ]]; then
  command -v mvn >/dev/null || { log "mvn not found: apt-get install maven"; exit 1; }
  log "fetching HAPI FHIR validator jars from Maven Central (infra/fhir-validator/pom.xml)"
  rm -rf "$OUT/lib"
  mkdir -p "$OUT/lib"
  mvn -q -B -f "$SRC/pom.xml" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$OUT/lib"
  touch "$OUT/lib/.complete"
fi
if [[ ! -f "$OUT/classes/Validate.class" || "$SRC/Validate.java" -nt "$OUT/classes/Validate.class" \
      || "$OUT/lib/.complete" -nt "$OUT/classes/Validate.class" ]]; then
  command -v javac >/dev/null || { log "javac not found: apt-get install openjdk-17-jdk-headless"; exit 1; }
  mkdir -p "$OUT/classes"
  javac -nowarn -d "$OUT/classes" -cp "$OUT/lib/*" "$SRC/Validate.java"
fi

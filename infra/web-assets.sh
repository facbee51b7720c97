#!/usr/bin/env bash
# The web view's browser libraries (htmx, uPlot) from the npm registry at the versions pinned in
# respmon/web/package.json and its lock, copied with their licences into respmon/web/static/vendor, which
# the team service serves itself: a hospital network reaches no CDN.
set -euo pipefail
cd "$(dirname "$0")/../respmon/web"
npm ci --no-audit --no-fund --loglevel=error
vendor=static/vendor
rm -rf "$vendor" && mkdir -p "$vendor"
cp node_modules/htmx.org/dist/htmx.min.js "$vendor/htmx.min.js"
cp node_modules/htmx.org/LICENSE "$vendor/LICENSE.htmx"
cp node_modules/uplot/dist/uPlot.iife.min.js "$vendor/uPlot.iife.min.js"
cp node_modules/uplot/dist/uPlot.min.css "$vendor/uPlot.min.css"
cp node_modules/uplot/LICENSE "$vendor/LICENSE.uplot"
node -e 'const l=require("./package-lock.json").packages;for(const n of ["htmx.org","uplot"])console.log(n+"@"+l["node_modules/"+n].version)' > "$vendor/VERSIONS"
echo "web assets: $(tr '\n' ' ' < "$vendor/VERSIONS")"

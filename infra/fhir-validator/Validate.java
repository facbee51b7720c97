// Validates FHIR R4 JSON resources with the HAPI FHIR instance validator, offline (no terminology server).
//
// Usage: java -cp '.stack/fhir-validator/lib/*:.stack/fhir-validator/classes' Validate FILE_OR_DIR...
// Prints one JSON line per file: {"file", "resourceType", "valid", "counts": {severity: n}, "issues": [...]}.
// CodeSystem resources among the files are loaded first, so codes of a system we publish (urn:respmon:code)
// are checked against it; LOINC and SNOMED cannot be checked offline and at most warn.
// Exit code 0 when no file has an error or fatal issue, 1 otherwise, 2 on a usage error.

import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.context.support.DefaultProfileValidationSupport;
import ca.uhn.fhir.validation.FhirValidator;
import ca.uhn.fhir.validation.ResultSeverityEnum;
import ca.uhn.fhir.validation.SingleValidationMessage;
import ca.uhn.fhir.validation.ValidationResult;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.stream.Stream;
import org.hl7.fhir.common.hapi.validation.support.CommonCodeSystemsTerminologyService;
import org.hl7.fhir.common.hapi.validation.support.InMemoryTerminologyServerValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.PrePopulatedValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.SnapshotGeneratingValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.ValidationSupportChain;
import org.hl7.fhir.common.hapi.validation.validator.FhirInstanceValidator;
import org.hl7.fhir.instance.model.api.IBaseResource;

public final class Validate {
    private Validate() {}

    public static void main(String[] args) throws IOException {
        if (args.length == 0) {
            System.err.println("usage: Validate FILE_OR_DIR...");
            System.exit(2);
        }
        List<Path> files = new ArrayList<>();
        for (String arg : args) {
            Path p = Path.of(arg);
            if (Files.isDirectory(p)) {
                try (Stream<Path> s = Files.list(p)) {
                    s.filter(f -> f.toString().endsWith(".json")).sorted().forEach(files::add);
                }
            } else {
                files.add(p);
            }
        }
        FhirContext ctx = FhirContext.forR4();
        PrePopulatedValidationSupport ours = new PrePopulatedValidationSupport(ctx);
        Map<Path, String> texts = new TreeMap<>();
        for (Path f : files) {
            String text = Files.readString(f, StandardCharsets.UTF_8);
            texts.put(f, text);
            if (text.contains("\"resourceType\": \"CodeSystem\"") || text.contains("\"resourceType\":\"CodeSystem\"")) {
                IBaseResource cs = ctx.newJsonParser().parseResource(text);
                ours.addCodeSystem(cs);
            }
        }
        ValidationSupportChain chain = new ValidationSupportChain(
            new DefaultProfileValidationSupport(ctx),
            ours,
            new InMemoryTerminologyServerValidationSupport(ctx),
            new CommonCodeSystemsTerminologyService(ctx),
            new SnapshotGeneratingValidationSupport(ctx));
        FhirInstanceValidator module = new FhirInstanceValidator(chain);
        FhirValidator validator = ctx.newValidator();
        validator.registerValidatorModule(module);
        boolean failed = false;
        for (Map.Entry<Path, String> e : texts.entrySet()) {
            ValidationResult result = validator.validateWithResult(e.getValue());
            Map<String, Integer> counts = new TreeMap<>();
            StringBuilder issues = new StringBuilder();
            for (SingleValidationMessage m : result.getMessages()) {
                String sev = m.getSeverity().getCode();
                counts.merge(sev, 1, Integer::sum);
                if (m.getSeverity() == ResultSeverityEnum.ERROR || m.getSeverity() == ResultSeverityEnum.FATAL) {
                    failed = true;
                }
                if (issues.length() > 0) {
                    issues.append(',');
                }
                issues.append("{\"severity\":").append(quote(sev))
                      .append(",\"location\":").append(quote(String.valueOf(m.getLocationString())))
                      .append(",\"message\":").append(quote(String.valueOf(m.getMessage()))).append('}');
            }
            StringBuilder c = new StringBuilder();
            for (Map.Entry<String, Integer> n : counts.entrySet()) {
                c.append(c.length() > 0 ? "," : "").append(quote(n.getKey())).append(':').append(n.getValue());
            }
            String type = e.getValue().replaceAll("(?s).*?\"resourceType\"\\s*:\\s*\"([A-Za-z]+)\".*", "$1");
            System.out.println("{\"file\":" + quote(e.getKey().toString()) + ",\"resourceType\":" + quote(type)
                + ",\"valid\":" + result.isSuccessful() + ",\"counts\":{" + c + "},\"issues\":[" + issues + "]}");
        }
        System.out.flush();
        System.exit(failed ? 1 : 0);
    }

    private static String quote(String s) {
        StringBuilder b = new StringBuilder("\"");
        for (char ch : s.toCharArray()) {
            switch (ch) {
                case '"' -> b.append("\\\"");
                case '\\' -> b.append("\\\\");
                case '\n' -> b.append("\\n");
                case '\r' -> b.append("\\r");
                case '\t' -> b.append("\\t");
                default -> {
                    if (ch < 0x20) {
                        b.append(String.format("\\u%04x", (int) ch));
                    } else {
                        b.append(ch);
                    }
                }
            }
        }
        return b.append('"').toString();
    }
}

"""Results in the hospital record: a read-only FHIR R4 API of the team service (`api`), the codes it speaks
(`codes`) and the resources it builds (`resources`). Imports nothing here, so `respmon.queries.fhir` can read
`codes` without loading the API."""

-- Issue 12: the oxygen flow a device declares with an upload (`?o2_lpm=`), kept with the raw bytes so that
-- `respmon reprocess` reads the file as it was read the first time.
ALTER TABLE raw_uploads ADD COLUMN o2_lpm double precision CHECK (o2_lpm >= 0 AND o2_lpm <= 30);

-- Ferry store, migration 6: a transfer's file size beside the bytes it
-- moved. A download that re-reads ranges moves more bytes than the file
-- has; an interrupted one fewer. NULL for rows written before.

ALTER TABLE transfers ADD COLUMN size INTEGER;

-- The image settings a build was resolved with (trousse_builder's
-- SettingsRecord as JSON): a build builds exactly these, whatever the
-- service's defaults are when it runs. Rows from before this column get
-- theirs, and a build key of the current format, when the service starts
-- (api/src/upgrade.rs).
ALTER TABLE builds ADD COLUMN settings TEXT;

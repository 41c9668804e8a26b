-- The previous release (0.1.0) has no guard against undoing an upgrade: its `migrate`, and its `up`
-- with DATABASE_URL (which runs it), found nothing to apply on a database this release migrated and
-- installed its own procedures over this release's, silently (runs started without deadlines, and
-- workflows' concurrency limits no longer held). It does refuse, before it installs anything, a
-- database whose recorded checksum of a migration it knows is not its file's: so this marks the
-- record of its last migration. This release reads a recorded checksum up to the mark
-- (sqlfiles.MARK). Its API and workers never migrate: they keep running through a rolling upgrade.
UPDATE dw.schema_migrations SET checksum = checksum || '+fenced-by-0038'
 WHERE version = '0022' AND strpos(checksum, '+') = 0;

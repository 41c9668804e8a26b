-- Saving a document template's (or a workflow template's) earlier text again answered with that
-- earlier version and changed nothing: the latest, which renders and instantiates without a
-- version, stayed the later text, and there was no way back to the earlier one. A version is now
-- compared with the latest only, and an earlier text again is a new latest version of it: the same
-- checksum may appear in several versions of one template. (The previous release's API, during a
-- rolling upgrade, still answers such a save with the earlier version, inserting nothing.)
ALTER TABLE dw.document_template_versions
    DROP CONSTRAINT IF EXISTS document_template_versions_tenant_id_set_id_name_checksum_key;
ALTER TABLE dw.workflow_templates DROP CONSTRAINT IF EXISTS workflow_templates_checksum_key;

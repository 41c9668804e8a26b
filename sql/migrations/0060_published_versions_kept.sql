-- A published version stays on record: dw.workflow_versions_immutable refused a change of its
-- definition, but a DELETE (by hand, in psql) removed it and, by cascade, its plan. A version with
-- runs was kept by their foreign key; one published and never run was not. A Draft version may still
-- be deleted; archiving is how a workflow is retired.
CREATE FUNCTION dw.workflow_versions_kept() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.published_at IS NOT NULL THEN
        RAISE EXCEPTION 'workflow version %/% is published and stays on record (archive the workflow instead)',
                        OLD.workflow_id, OLD.version
            USING ERRCODE = 'DW020';
    END IF;
    RETURN OLD;
END;
$$;
CREATE TRIGGER workflow_versions_kept BEFORE DELETE ON dw.workflow_versions
    FOR EACH ROW EXECUTE FUNCTION dw.workflow_versions_kept();

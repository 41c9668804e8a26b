-- How many runs a run tree holds, on its root's row (dw.start_child_v2): counting the tree's runs at
-- each child's start (dw.start_child_v1) read every run of the tree, under the parent's lock, at
-- every start: a forEach of 9,999 subworkflow items spent 60 s of its 185 s there (bench
-- foreach_children.py, 2026-12-07). NULL: not counted yet (a tree started before this release, or
-- under no limit); its runs are counted once, at its next child's start under a limit. Adding a
-- column with no default rewrites nothing.
ALTER TABLE dw.executions ADD COLUMN tree_runs integer;

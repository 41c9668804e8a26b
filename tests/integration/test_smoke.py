from __future__ import annotations

from tests.conftest import load_fixture, publish, start


async def test_migrated_template_is_cloned(db) -> None:
    version = await publish(db, load_fixture("bundle1/simple-echo-workflow.json"))
    assert version == 1
    execution_id = await start(db, "simple-echo")
    row = await db.fetch_one("get_execution", id=execution_id)
    assert row["status"] == "Pending"

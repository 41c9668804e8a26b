"""Every integration test gets a template pool (helpers start only when a template needs one)."""

from __future__ import annotations

import pytest

from dataworkflows.template_pool import TemplatePool


@pytest.fixture(autouse=True)
def _template_pool(templates: TemplatePool) -> TemplatePool:
    return templates

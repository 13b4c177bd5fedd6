"""Fixtures of the chart tests: the real helm binary (hack/install-helm.sh puts it in VIF_HELM)."""

from __future__ import annotations

import pytest
from chart_helpers import Helm

from fixtures.prereq import require_path


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    """helm 3, with a private HOME so no user configuration or plugin changes what it renders."""
    return Helm(
        require_path("VIF_HELM", "helm binary (hack/install-helm.sh)"), tmp_path_factory.mktemp("helm")
    )

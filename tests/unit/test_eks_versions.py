"""EKS versions: the preview's warning before standard support ends, and the pinned add-on builds."""

from __future__ import annotations

import datetime

from infra import eks_versions, settings


def test_default_version_is_in_standard_support_and_has_addons() -> None:
    assert eks_versions.DEFAULT in eks_versions.ADDONS
    assert eks_versions.END_OF_STANDARD_SUPPORT[eks_versions.DEFAULT] > datetime.date(2026, 12, 31)
    (declared,) = [d for d in settings.declarations() if d.key == "kubernetesVersion"]
    assert declared.default == eks_versions.DEFAULT


def test_warns_within_sixty_days_of_the_end_of_standard_support() -> None:
    end = eks_versions.END_OF_STANDARD_SUPPORT["1.34"]
    assert eks_versions.support_warning("1.34", end - datetime.timedelta(days=61)) is None
    soon = eks_versions.support_warning("1.34", end - datetime.timedelta(days=60))
    assert soon is not None and "leaves EKS standard support on 2026-12-02 (in 60 days)" in soon
    gone = eks_versions.support_warning("1.34", end + datetime.timedelta(days=1))
    assert gone is not None and "left EKS standard support on 2026-12-02" in gone


def test_a_version_missing_from_the_table_is_said_so() -> None:
    warning = eks_versions.support_warning("1.40", datetime.date(2026, 11, 29))
    assert warning is not None and "not in this program's table" in warning

from __future__ import annotations

from pathlib import Path

import pytest

from gatehub.pki import CertificateAuthority, TlsContextProvider


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority.load_or_create(tmp_path / "pki")


@pytest.fixture
def other_ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority.load_or_create(tmp_path / "other-pki")


@pytest.fixture
def provider(ca: CertificateAuthority) -> TlsContextProvider:
    return TlsContextProvider(ca)

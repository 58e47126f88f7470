"""Host-side (CPython) code shared by tools/ and backend/: e.g. the OCPI tariff compiler (evc.tariff)."""

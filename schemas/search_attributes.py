"""Custom search attributes on every job workflow; registered by `kintsugi dev-server`."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

TENANT = SearchAttributeKey.for_keyword("KintsugiTenant")
MODEL = SearchAttributeKey.for_keyword("KintsugiModel")
STATUS = SearchAttributeKey.for_keyword("KintsugiStatus")
ALL = (TENANT, MODEL, STATUS)

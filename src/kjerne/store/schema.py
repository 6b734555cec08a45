"""Tables of the FHIR store.

`resource` holds the current version of every resource, `resource_history` every earlier one, so each
version is stored exactly once. The search index is extracted at write time into one table per
search-parameter type. Every row carries `patient` (the Patient id of the compartment it belongs to),
so one index finds everything a patient has and the schema can be distributed by patient
(docs/distribution.md).
"""

from __future__ import annotations

from typing import overload

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

# Longest value kept in an indexed column; longer values are cut to this length on write and in
# search alike, which keeps them inside PostgreSQL's B-tree row limit.
MAX_INDEXED = 512


@overload
def cut(value: str) -> str: ...
@overload
def cut(value: str | None) -> str | None: ...
def cut(value: str | None) -> str | None:
    return value[:MAX_INDEXED] if value is not None and len(value) > MAX_INDEXED else value


# SQLite only makes INTEGER PRIMARY KEY an alias of the rowid; BIGINT keeps PostgreSQL at 64 bits.
RowId = BigInteger().with_variant(Integer(), "sqlite")

resource = Table(
    "resource",
    metadata,
    Column("rid", RowId, primary_key=True, autoincrement=True),
    Column("res_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("patient", String(64)),
    Column("last_updated", BigInteger, nullable=False),  # microseconds since the epoch, UTC
    Column("deleted", Boolean, nullable=False, default=False),
    Column("content", LargeBinary, nullable=False),  # the resource as UTF-8 JSON
    UniqueConstraint("res_type", "res_id", name="uq_resource_type_id"),
)
Index("ix_resource_patient", resource.c.patient, resource.c.res_type, resource.c.rid)
Index("ix_resource_type_updated", resource.c.res_type, resource.c.last_updated, resource.c.rid)

resource_history = Table(
    "resource_history",
    metadata,
    Column("rid", BigInteger, primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("res_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("patient", String(64)),
    Column("last_updated", BigInteger, nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("content", LargeBinary, nullable=False),
)
Index("ix_history_type_updated", resource_history.c.res_type, resource_history.c.last_updated)
Index("ix_history_patient", resource_history.c.patient, resource_history.c.res_type)


def _index_table(name: str, *columns: Column) -> Table:
    return Table(
        name,
        metadata,
        Column("rid", BigInteger, nullable=False),
        Column("res_type", String(64), nullable=False),
        Column("patient", String(64)),
        Column("param", String(100), nullable=False),
        *columns,
    )


idx_token = _index_table(
    "idx_token",
    Column("system", String(MAX_INDEXED)),
    Column("code", String(MAX_INDEXED)),
    Column("text", Text),
)
Index("ix_token_lookup", idx_token.c.res_type, idx_token.c.param, idx_token.c.code, idx_token.c.system)
Index("ix_token_patient", idx_token.c.patient, idx_token.c.param, idx_token.c.code)
Index("ix_token_rid", idx_token.c.rid)

idx_string = _index_table(
    "idx_string",
    Column("norm", String(255), nullable=False),
    Column("exact", Text, nullable=False),
)
Index("ix_string_lookup", idx_string.c.res_type, idx_string.c.param, idx_string.c.norm)
Index("ix_string_rid", idx_string.c.rid)

idx_date = _index_table(
    "idx_date",
    Column("low", BigInteger, nullable=False),
    Column("high", BigInteger, nullable=False),
)
Index("ix_date_lookup", idx_date.c.res_type, idx_date.c.param, idx_date.c.low)
Index("ix_date_rid", idx_date.c.rid, idx_date.c.param)
Index("ix_date_patient", idx_date.c.patient, idx_date.c.res_type, idx_date.c.param, idx_date.c.high)

idx_reference = _index_table(
    "idx_reference",
    Column("target_type", String(64)),
    Column("target_id", String(64)),
    Column("ident_system", String(MAX_INDEXED)),
    Column("ident_value", String(MAX_INDEXED)),
    Column("url", Text),
)
Index("ix_reference_target", idx_reference.c.target_id, idx_reference.c.target_type, idx_reference.c.param)
Index("ix_reference_ident", idx_reference.c.ident_value, idx_reference.c.param)
Index("ix_reference_rid", idx_reference.c.rid)

idx_quantity = _index_table(
    "idx_quantity",
    Column("value", Float, nullable=False),
    Column("system", String(MAX_INDEXED)),
    Column("code", String(MAX_INDEXED)),
    Column("unit", String(MAX_INDEXED)),
)
Index("ix_quantity_lookup", idx_quantity.c.res_type, idx_quantity.c.param, idx_quantity.c.value)
Index("ix_quantity_rid", idx_quantity.c.rid)

idx_number = _index_table("idx_number", Column("value", Float, nullable=False))
Index("ix_number_lookup", idx_number.c.res_type, idx_number.c.param, idx_number.c.value)
Index("ix_number_rid", idx_number.c.rid)

idx_uri = _index_table("idx_uri", Column("value", Text, nullable=False))
Index("ix_uri_lookup", idx_uri.c.res_type, idx_uri.c.param, idx_uri.c.value)
Index("ix_uri_rid", idx_uri.c.rid)

# Search snapshots: the ordered rids of a search, fixed at its first page, so that later pages neither
# skip nor repeat rows however the data changes in between.
search_snapshot = Table(
    "search_snapshot",
    metadata,
    Column("sid", String(36), primary_key=True),
    Column("pos", Integer, primary_key=True),
    Column("rid", BigInteger, nullable=False),
)
search_snapshot_info = Table(
    "search_snapshot_info",
    metadata,
    Column("sid", String(36), primary_key=True),
    Column("res_type", String(64), nullable=False),
    Column("query_hash", String(64), nullable=False),  # the search a cursor belongs to
    Column("created", BigInteger, nullable=False),
    Column("size", Integer, nullable=False),
    Column("complete", Boolean, nullable=False),  # false: the search had more rows than a snapshot holds
)
Index("ix_snapshot_created", search_snapshot_info.c.created)

# Observations by patient, code and time: $lastn and $stats read this index alone, so the latest values
# of a patient with a hundred thousand measurements are an index range scan, not a sort.
idx_obs = Table(
    "idx_obs",
    metadata,
    Column("rid", BigInteger, nullable=False),
    Column("patient", String(64), nullable=False),
    Column("system", String(MAX_INDEXED)),
    Column("code", String(MAX_INDEXED), nullable=False),
    Column("effective", BigInteger, nullable=False),  # microseconds; the end of a period
    Column("value", Float),  # the quantity (or integer) value, or the component's value
    Column("unit", String(64)),
    Column("component", Boolean, nullable=False, default=False),  # a row for a component's code
)
Index("ix_obs_lastn", idx_obs.c.patient, idx_obs.c.code, idx_obs.c.system, idx_obs.c.effective)
Index("ix_obs_rid", idx_obs.c.rid)

# The distinct Observation codes each patient has, so $lastn over every code starts from a handful of
# rows instead of a scan of the patient's whole observation index. Written once per new code.
patient_code = Table(
    "patient_code",
    metadata,
    Column("patient", String(64), primary_key=True),
    Column("code", String(MAX_INDEXED), primary_key=True),
    Column("system", String(MAX_INDEXED), primary_key=True, default=""),  # "" when the coding has none
)

# Every message a producer delivers, accepted or rejected: producer coverage statistics and
# idempotent redelivery are read from here.
ingest_log = Table(
    "ingest_log",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("received", BigInteger, nullable=False),
    Column("producer", String(64), nullable=False),  # organisation number of the token, or the sender id
    Column("producer_name", String(255)),
    Column("sender", String(64)),  # the sender named in the message (HER-id, organisation number)
    Column("format", String(16), nullable=False),  # svarrapport | hl7v2 | fhir
    Column("msg_id", String(255)),
    Column("status", String(16), nullable=False),  # ok | warning | superseded | duplicate | rejected
    Column("reasons", Text),
    Column("issued", BigInteger),  # when the producer issued the report
    Column("reports", Integer, nullable=False, default=0),
    Column("receipt", LargeBinary),  # the receipt sent back, so a redelivery gets the same answer
)
Index("ix_ingest_producer", ingest_log.c.producer, ingest_log.c.received)
Index("ix_ingest_msg", ingest_log.c.producer, ingest_log.c.msg_id)

INDEX_TABLES = {
    "token": idx_token,
    "string": idx_string,
    "date": idx_date,
    "reference": idx_reference,
    "quantity": idx_quantity,
    "number": idx_number,
    "uri": idx_uri,
}

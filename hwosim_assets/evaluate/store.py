"""``hwosim_scores``: every scorecard's rows in the stream database, for dashboards.

One row per (scorecard, metric), the columns of :data:`scorecard.ROW_SCHEMA`:
a dashboard on MySQL (Grafana, Superset, a notebook) selects a model's
``flags.f1`` by ``level`` without reading the lake. Writing a scorecard
replaces the rows of an earlier one with the same identity (model, model
hash, observation, profile and its hash, seed, mode, stream, rate) in one
transaction, so a rerun never doubles a curve. The table lives beside the
stream tables but in its own metadata: consumers of the streams never need it.
"""

from __future__ import annotations

from typing import Any

import polars as pl
import sqlalchemy as sa

from hwosim_assets.evaluate.scorecard import ROW_SCHEMA, Scorecard, frame

metadata = sa.MetaData()

scores = sa.Table(
    "hwosim_scores",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("scorecard_id", sa.String(24), nullable=False),
    sa.Column("created", sa.Double, nullable=False),  # UTC epoch seconds
    sa.Column("model", sa.String(64), nullable=False),
    sa.Column("model_ref", sa.String(255), nullable=False),
    sa.Column("model_version", sa.String(128), nullable=False),
    sa.Column("model_hash", sa.String(16), nullable=False),
    sa.Column("model_params", sa.Text, nullable=False),
    sa.Column("observation", sa.String(128), nullable=False),
    sa.Column("family", sa.String(16), nullable=False),
    sa.Column("profile", sa.String(64), nullable=False),
    sa.Column("profile_hash", sa.String(64), nullable=False),
    sa.Column("level", sa.Integer),
    sa.Column("seed", sa.BigInteger, nullable=False),
    sa.Column("mode", sa.String(8), nullable=False),
    sa.Column("stream", sa.String(64)),
    sa.Column("rate", sa.Double),
    sa.Column("status", sa.String(8), nullable=False),
    sa.Column("error", sa.Text, nullable=False),
    sa.Column("metric", sa.String(128)),
    sa.Column("value", sa.Double),
    sa.Index("ix_hwosim_scores_scorecard", "scorecard_id"),
    sa.Index("ix_hwosim_scores_model_metric", "model", "metric", "level"),
)


def create(engine: sa.Engine) -> None:
    """Create the table if it is missing (idempotent)."""
    metadata.create_all(engine, checkfirst=True)


def write(engine: sa.Engine, cards: list[Scorecard]) -> int:
    """Store the scorecards' rows, replacing earlier rows of the same scorecards; returns rows written."""
    rows = frame(cards)
    if rows.is_empty():
        return 0
    create(engine)
    with engine.begin() as conn:
        conn.execute(scores.delete().where(scores.c.scorecard_id.in_(rows["scorecard_id"].unique().to_list())))
        conn.execute(scores.insert(), rows.to_dicts())
    return len(rows)


def read(engine: sa.Engine, **where: Any) -> pl.DataFrame:
    """Stored rows, filtered by column values (``model="sigma-clip"``, ``mode="offline"``...)."""
    create(engine)
    query = sa.select(*[scores.c[name] for name in ROW_SCHEMA])
    for column, value in where.items():
        query = query.where(scores.c[column] == value)
    with engine.connect() as conn:
        result = conn.execute(query).all()
    return pl.DataFrame([tuple(r) for r in result], schema=ROW_SCHEMA, orient="row")

"""Stream partitions: one per declared stream, per family, registered by `stream_tables`.

Each stream's replay runs materialize its own partition of `stream_spectra`
or `stream_images`, so a stream's history (rate, lateness, lag per run) is
its own in the UI, even when several streams replay one observation.
"""

import dagster as dg

from hwosim_assets.records import FAMILIES

# one per family: spectra_streams, images_streams
STREAM_PARTITIONS = {name: dg.DynamicPartitionsDefinition(name=f"{name}_streams") for name in FAMILIES}

"""The project-wide settings every stage reads, as one resource."""

import dagster as dg


class HwosimConfig(dg.ConfigurableResource):
    """Project-wide knobs that are not a connection: the global seed, the
    profile, stream and model files, the tile size of image packets."""

    seed: int = 20261124
    profiles_path: str = ""
    streams_path: str = ""
    tile_size: int = 128
    models_path: str = ""

"""The code location: every definition under ``defs/``, with the resources and
the replay sensors the environment asks for, chosen once, when Dagster loads
this module (``settings.Settings`` is the only reader of the environment).

``defs/`` is loaded with Dagster's module loader rather than
``load_from_defs_folder``: that one also discovers every installed components
library (dagster-aws's) and builds their JSON schemas, about 1.5 CPU-seconds
each time the code location loads, and every replay run loads it
(measured: 4.6 s -> 3.0 s per load on this 2-core machine).
"""

import warnings

import dagster as dg

from hwosim_assets import defs as defs_package
from hwosim_assets.defs.resources import resources_from_settings
from hwosim_assets.defs.streams.sensors import stream_sensors
from hwosim_assets.settings import Settings


def load_defs_folder() -> dg.Definitions:
    """Assets, checks and jobs of every module under ``defs/`` (no resources, no sensors)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)  # the loader is marked preview; stable in use
        warnings.simplefilter("ignore", dg.BetaWarning)
        return dg.load_definitions_from_package_module(defs_package)


@dg.definitions
def defs() -> dg.Definitions:
    settings = Settings.from_env()
    return dg.Definitions.merge(
        load_defs_folder(),
        dg.Definitions(
            resources=resources_from_settings(settings),
            sensors=stream_sensors(settings),
            # Steps run in the run's own process: the default executor would start a second Python
            # process per run and load the code location again (measured: +4.5 s and +5 CPU-s a run).
            executor=dg.in_process_executor,
        ),
    )

import warnings as _warnings

import dagster as _dg

# The Dagster layer uses a few beta/preview APIs on purpose (observable source
# assets, multi-to-single-dimension partition mappings, data versions by
# partition); say so once here instead of on every load of the code location.
for _category in (_dg.BetaWarning, _dg.PreviewWarning):
    _warnings.filterwarnings("ignore", category=_category, module=r"hwosim_assets(\..*)?$")
_warnings.filterwarnings(
    "ignore", message="Function `observable_source_asset` is currently in beta", category=_dg.BetaWarning
)

# HWOsim code location, webserver and daemon in one image.
#
#   docker build -t hwosim .
#   docker run -p 3000:3000 --env-file hwosim.env hwosim                     # webserver
#   docker run --env-file hwosim.env hwosim dagster-daemon run              # daemon (sensors, run queue)
#
# The image's dagster.yaml is the repository's with the MySQL storage section
# appended: Dagster's runs and events in MySQL/MariaDB, so the env file needs
# DAGSTER_MYSQL_HOSTNAME/PORT/USERNAME/PASSWORD/DB, and for the real services
# HWOSIM_LAKE_URL (+ AWS_*) and HWOSIM_STREAM_DB_URL. Secrets go in at run
# time, never into the image.

# Pinned patch release of the Debian 12 slim image: rebuilds get the same
# Python; bump it deliberately.
FROM python:3.11.14-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DAGSTER_HOME=/opt/dagster/home \
    HWOSIM_HOME=/var/lib/hwosim \
    NUMBA_CACHE_DIR=/var/lib/hwosim/numba-cache

# An unprivileged user owns only what it must write: Dagster's home (compute
# logs, local artifacts) and HWOsim's working folder (with numba's cache of
# the compiled perturbation kernels: site-packages is not writable).
RUN useradd --create-home --uid 10001 --user-group hwosim \
    && mkdir -p "$DAGSTER_HOME" "$HWOSIM_HOME" \
    && chown hwosim:hwosim "$DAGSTER_HOME" "$HWOSIM_HOME"

WORKDIR /opt/hwosim

# Dependencies first, from pyproject.toml and an empty stub package, so this
# slow layer is rebuilt only when the dependencies change, not on every edit.
COPY pyproject.toml README.md ./
RUN mkdir hwosim_assets \
    && touch hwosim_assets/__init__.py \
    && pip install --no-cache-dir . \
    && pip uninstall --yes hwosim \
    && rm -rf hwosim_assets build ./*.egg-info

# Then the code itself (no dependency resolution: all are installed above).
COPY hwosim_assets ./hwosim_assets
COPY workspace.yaml ./
RUN pip install --no-cache-dir --no-deps . \
    && rm -rf build ./*.egg-info

COPY dagster.yaml ./
RUN cat dagster.yaml hwosim_assets/defaults/dagster-mysql-storage.yaml > "$DAGSTER_HOME/dagster.yaml" \
    && chown 10001:10001 "$DAGSTER_HOME/dagster.yaml"
# numeric, so Kubernetes' runAsNonRoot can verify it without /etc/passwd
USER 10001:10001

EXPOSE 3000

# Inside a container the webserver must listen on all interfaces (0.0.0.0):
# 127.0.0.1 there is the container's own loopback, unreachable through -p.
# Run the daemon from the same image with the command `dagster-daemon run`.
CMD ["dagster-webserver", "-h", "0.0.0.0", "-p", "3000", "-w", "workspace.yaml"]

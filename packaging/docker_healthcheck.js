// The container's HEALTHCHECK: exit 0 when GET /healthz answers 200, 1 otherwise (the slim image has no
// curl). It asks the broker on loopback, where the certificate names the public host, not 127.0.0.1, so
// it does not verify the certificate: it checks liveness, not identity. HEALTHCHECK_URL overrides the
// address, e.g. http://127.0.0.1:8443/healthz for tls.mode off.
import { get as httpGet } from 'node:http'
import { get as httpsGet } from 'node:https'

const url = new URL(process.env.HEALTHCHECK_URL || 'https://127.0.0.1:8443/healthz')
const get = url.protocol === 'https:' ? httpsGet : httpGet
get(url, { rejectUnauthorized: false, timeout: 4000 }, (res) => {
  res.resume()
  process.exit(res.statusCode === 200 ? 0 : 1)
})
  .on('timeout', () => process.exit(1))
  .on('error', () => process.exit(1))

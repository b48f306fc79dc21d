import { join } from 'node:path'

/**
 * Where the pool CA keeps its key and certificate. Apart from pool_ca.ts so that a broker can tell whether a
 * CA exists without loading @peculiar/x509 (about 15 MB resident) when there is none.
 */
export interface PoolCaFiles { keyFile: string; certFile: string }

export function poolCaFiles(dir: string): PoolCaFiles {
  return { keyFile: join(dir, 'ca.key'), certFile: join(dir, 'ca.crt') }
}

// The development IAM in a process of its own, so the bench measures the broker's memory and CPU without
// it. Prints one JSON line ({ issuer, discovery_url, client_id, client_secret, auth_method }: what the
// broker needs to trust it) once it accepts connections; stops on SIGTERM.
//
//   node bench/dev_iam_process.ts <port> <broker issuer (the aud of tokens that ask for none)>
import { devIamBrokerSettings } from '../src/dev_iam/broker_settings.ts'
import { startDevIam } from '../src/dev_iam/start_dev_iam.ts'

const iam = await startDevIam({ port: Number(process.argv[2]), defaultAudience: process.argv[3] })
process.stdout.write(`${JSON.stringify(devIamBrokerSettings(iam))}\n`)
const stop = () => { void iam.close().then(() => process.exit(0)) }
process.once('SIGTERM', stop)
process.once('SIGINT', stop)

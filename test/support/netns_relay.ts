// Run inside a network namespace (nsenter --net=...): listens on TCP `port` on the namespace's loopback
// and pipes each connection to the unix socket `path`, which a process outside the namespace serves.
// Unix sockets are files, not network endpoints, so they cross network namespaces.
import { connect, createServer } from 'node:net'

const [port, path] = process.argv.slice(2)
const server = createServer((inside) => {
  const outside = connect(path!)
  inside.pipe(outside).pipe(inside)
  const end = () => { inside.destroy(); outside.destroy() }
  inside.on('error', end)
  outside.on('error', end)
})
// Only lo exists in the namespace, so every address is a loopback one.
server.listen(Number(port), '::', () => process.stdout.write('ready\n'))

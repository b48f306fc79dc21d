/** What the console tests share: reading a Set-Cookie, and signing in on the bootstrap-token form. */

/** Anything that answers a request as the hono app does (`app.request`). */
export interface RequestTarget {
  request(path: string, init?: RequestInit): Response | Promise<Response>
}

/** The value `res` sets for cookie `name`, if it sets one. */
export function cookieOf(res: Response, name: string): string | undefined {
  const line = res.headers.getSetCookie().find((l) => l.startsWith(`${name}=`))
  return line?.slice(name.length + 1).split(';')[0]
}

/** Fills in the sign-in page's bootstrap-token form with `token` and posts it; resolves the sign-in answer. */
export async function signInWithToken(app: RequestTarget, token: string, origin: string): Promise<Response> {
  const page = await app.request('/console/sign-in')
  const pre = cookieOf(page, '__Host-ctb-console-pre')!
  const preCsrf = /name="csrf" value="([^"]+)"/.exec(await page.text())![1]!
  return app.request('/console/sign-in/token', {
    method: 'POST', headers: { origin, cookie: `__Host-ctb-console-pre=${pre}`, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ csrf: preCsrf, token }),
  })
}

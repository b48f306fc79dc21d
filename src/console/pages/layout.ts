import { html, type Html } from '../html.ts'

export type ConsoleTab = 'overview' | 'search' | 'pilots' | 'credentials' | 'act'

/** Who is signed in, for the header; absent on the sign-in pages. */
export interface Viewer {
  principal: string
  csrf: string
}

const TABS: ReadonlyArray<[ConsoleTab, string, string]> = [
  ['overview', 'Overview', '/console'],
  ['search', 'Search', '/console/search'],
  ['pilots', 'Pilots', '/console/pilots'],
  ['credentials', 'Credentials', '/console/credentials'],
  ['act', 'Act', '/console/act'],
]

/** The CSRF field every state-changing form carries. */
export function csrfField(viewer: Viewer): Html {
  return html`<input type="hidden" name="csrf" value="${viewer.csrf}">`
}

/** A whole console page: no script, one same-origin style sheet. */
export function page(title: string, body: Html, o: { viewer?: Viewer; tab?: ConsoleTab } = {}): string {
  const nav = o.viewer ? html`<nav>${TABS.map(([id, label, href]) => html`<a href="${href}"${id === o.tab ? html` class="active"` : ''}>${label}</a>`)}</nav>
<div class="who"><span>signed in as <span class="mono">${o.viewer.principal}</span></span>
<form class="inline" method="post" action="/console/sign-out">${csrfField(o.viewer)}<button type="submit">Sign out</button></form></div>` : ''
  return html`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>${title} · condor-token-broker</title><link rel="stylesheet" href="/console/static/console.css"></head>
<body><header><h1>condor-token-broker</h1>${nav}</header><main>${body}</main></body></html>`.value
}

export function banner(kind: 'error' | 'info', message: Html | string): Html {
  return html`<div class="banner ${kind}" role="${kind === 'error' ? 'alert' : 'status'}">${message}</div>`
}

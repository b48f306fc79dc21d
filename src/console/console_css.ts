/**
 * The console's only style sheet, served from /console/static/console.css (CSP style-src 'self': no inline
 * styles). Sized for 1280x800: two chart columns, compact tables, system fonts (nothing fetched).
 */
export const CONSOLE_CSS = `
*{box-sizing:border-box}
body{margin:0;font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:#1d2430;background:#f4f6f9}
header{display:flex;align-items:center;gap:24px;padding:8px 20px;background:#1d2b45;color:#fff}
header h1{font-size:16px;margin:0;font-weight:600}
header nav a{color:#cfe0ff;text-decoration:none;margin-right:14px;padding:4px 0}
header nav a.active{color:#fff;border-bottom:2px solid #E69F00}
header .who{margin-left:auto;font-size:13px;color:#cfe0ff;display:flex;gap:10px;align-items:center}
header .who button{background:none;border:1px solid #7d93b8;color:#fff;border-radius:4px;padding:2px 8px;cursor:pointer}
main{padding:14px 20px;max-width:1280px}
h2{font-size:15px;margin:0 0 8px}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:12px}
.card{background:#fff;border:1px solid #dde3ec;border-radius:6px;padding:10px 12px;margin-bottom:12px;overflow:auto}
.chart text{font-size:10px;fill:#556}
.legend{list-style:none;margin:4px 0 0;padding:0;display:flex;flex-wrap:wrap;gap:4px 12px;font-size:12px}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:3px 6px;border-bottom:1px solid #eef1f5;vertical-align:top}
th{background:#f0f3f8;font-weight:600}
td.nw{white-space:nowrap}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
table.bars td.label{max-width:380px;overflow-wrap:anywhere}
.mono,code,pre{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:12px;overflow-wrap:anywhere}
pre{white-space:pre-wrap;background:#f7f9fc;border:1px solid #e3e8ef;padding:8px;border-radius:4px;max-height:420px;overflow:auto}
.ok{color:#0a7a3d;font-weight:600}.bad{color:#b3261e;font-weight:600}.muted{color:#6b7585}
.banner{padding:8px 12px;border-radius:6px;margin-bottom:12px}
.banner.error{background:#fdecea;border:1px solid #f5c2bd}.banner.info{background:#e8f1fd;border:1px solid #bcd4f6}
form.inline{display:inline}
form.search{display:grid;grid-template-columns:repeat(5,1fr);gap:6px 10px;align-items:end}
label{display:flex;flex-direction:column;font-size:12px;color:#445}
input,select,textarea{font:inherit;padding:4px 6px;border:1px solid #c3ccd9;border-radius:4px;background:#fff}
button{font:inherit;padding:5px 12px;border-radius:4px;border:1px solid #1d2b45;background:#1d2b45;color:#fff;cursor:pointer}
button.danger{background:#b3261e;border-color:#b3261e}
.range a{margin-right:10px}
dl.kv{display:grid;grid-template-columns:180px 1fr;gap:2px 12px;margin:0}
dl.kv dt{color:#556}dl.kv dd{margin:0;overflow-wrap:anywhere}
`

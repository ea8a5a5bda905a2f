// Package clientjs embeds the browser client and the demo page, as shipped,
// for the server to serve at / and /client/.
package clientjs

import (
	"embed"
	"io/fs"
)

//go:embed index.html demo.js demo.css sigbase.js sigbase.d.ts webrtc.js webrtc.d.ts mesh.js mesh.d.ts package.json
var files embed.FS

// FS holds the files at its root: index.html, sigbase.js, webrtc.js, ...
func FS() fs.FS { return files }

hljs.highlightAll();  // the theme's own call, for the copy vendored by scripts/vendor_highlight.py

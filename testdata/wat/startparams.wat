;; startparams.wat: exports a _start that takes a parameter, which no WASI command's _start does.
(module
  (memory (export "memory") 1)
  (func (export "_start") (param i32)))

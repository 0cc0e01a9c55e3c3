;; invalid.wat: parses, but fails validation (function declared to return i32
;; leaves nothing on the stack). Built with `wat2wasm --no-check`.
(module
  (memory (export "memory") 1)
  (func (export "_start") (result i32)
    nop))

;; recurse.wat: _start calls itself without end, until wazero's call stack overflows.
(module
  (memory (export "memory") 1)
  (func $start (export "_start")
    call $start))

;; importmemory.wat: imports its linear memory instead of defining it; no host provides one.
(module
  (import "env" "memory" (memory 1))
  (func (export "_start")))

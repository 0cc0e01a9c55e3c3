;; nostart.wat: valid module exporting memory and "run" but no "_start".
(module
  (memory (export "memory") 1)
  (func (export "run") (result i32)
    i32.const 42))

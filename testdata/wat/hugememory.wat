;; hugememory.wat: declares 40000 pages (2.5 GiB) of minimum linear memory.
(module
  (memory (export "memory") 40000)
  (func (export "_start")))

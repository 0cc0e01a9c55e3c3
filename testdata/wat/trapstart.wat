;; trapstart.wat: a start function (the module's start section, run when the module is
;; instantiated, before _start) that traps.
(module
  (memory (export "memory") 1)
  (func $init
    unreachable)
  (start $init)
  (func (export "_start")))

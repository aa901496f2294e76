-- aigw.runtime -- the name the C core loads: the module is aigw.engine.runtime.
return require "aigw.engine.runtime"

-- aigw.config -- the name the C core loads: the module is aigw.engine.config.
return require "aigw.engine.config"

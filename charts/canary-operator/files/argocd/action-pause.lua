-- Ask the operator to pause (the same request as kubectl canary pause); it acknowledges and clears it.
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["canary.dev/pause"] = "true"
return obj

-- Ask the operator to retry (the same request as kubectl canary retry); it acknowledges and clears it.
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["canary.dev/retry"] = "true"
return obj

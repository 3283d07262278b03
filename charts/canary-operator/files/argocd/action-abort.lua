-- Ask the operator to abort (the same request as kubectl canary abort); it acknowledges and clears it.
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["canary.dev/abort"] = "true"
return obj

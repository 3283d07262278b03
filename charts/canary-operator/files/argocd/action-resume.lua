-- Ask the operator to resume (the same request as kubectl canary resume); it acknowledges and clears it.
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["canary.dev/resume"] = "true"
return obj

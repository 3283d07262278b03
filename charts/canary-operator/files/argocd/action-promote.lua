-- Ask the operator to promote (the same request as kubectl canary promote); it acknowledges and clears it.
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["canary.dev/promote"] = "true"
return obj

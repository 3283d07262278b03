-- Ask the operator to promote past all remaining steps (the same request as kubectl canary promote --full); it acknowledges and clears it.
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["canary.dev/promote"] = "full"
return obj

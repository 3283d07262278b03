-- Which canary actions make sense in the rollout's phase.
local phase = ""
if obj.status ~= nil and obj.status.phase ~= nil then
  phase = obj.status.phase
end
local underway = phase == "Progressing" or phase == "Paused"
local actions = {}
actions["promote"] = {["disabled"] = not underway}
actions["promote-full"] = {["disabled"] = not underway}
actions["abort"] = {["disabled"] = not (underway or phase == "Promoting")}
actions["retry"] = {["disabled"] = phase ~= "RolledBack"}
actions["pause"] = {["disabled"] = phase ~= "Progressing"}
actions["resume"] = {["disabled"] = phase ~= "Paused"}
return actions

-- Argo CD health of a canary.dev CanaryRollout, read from its kstatus conditions and phase.
-- Degraded: rolled back, or blocked until someone acts (invalid spec, object conflict, no target, no data,
-- no progress within progressDeadline).
-- Suspended: held on purpose or waiting for data (a manual pause, a pause step waiting for promote,
-- checks that cannot conclude yet); it resumes by itself or on request.
local hs = {status = "Progressing", message = "Waiting for the operator"}
if obj.status == nil then
  return hs
end
local status = obj.status
local generation = obj.metadata.generation
if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration < generation then
  hs.message = "Waiting for the operator to observe generation " .. generation
  return hs
end
local conditions = {}
if status.conditions ~= nil then
  for _, condition in ipairs(status.conditions) do
    conditions[condition.type] = condition
  end
end
local message = status.message or ""
local held = {InsufficientTraffic = true, Inconclusive = true, PausedByRequest = true}
local stalled = conditions["Stalled"]
if status.phase == "Paused" and status.hold ~= "Deadline" then
  hs.status = "Suspended"
  hs.message = message
  return hs
end
if stalled ~= nil and stalled.status == "True" then
  hs.message = stalled.reason .. ": " .. (stalled.message or "")
  if held[stalled.reason] then
    hs.status = "Suspended"
  else
    hs.status = "Degraded"
  end
  return hs
end
if status.phase == "Progressing" and obj.spec ~= nil and obj.spec.steps ~= nil then
  local step = obj.spec.steps[(status.currentStepIndex or 0) + 1]
  if step ~= nil and step.pause ~= nil and step.pause.duration == nil and status.weightSettledAt ~= nil then
    hs.status = "Suspended"
    hs.message = "Paused at step " .. ((status.currentStepIndex or 0) + 1) .. ": waiting for promote"
    return hs
  end
end
local ready = conditions["Ready"]
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = message
  return hs
end
hs.message = message
return hs

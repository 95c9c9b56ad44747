# Registers oqs-agent as a Windows service (UNTESTED: see README.md beside this file).
# Run in an elevated PowerShell:  .\install-service.ps1 -Exe C:\Program Files\OQS\oqs-agent.exe
param(
  [Parameter(Mandatory = $true)] [string] $Exe,
  [string] $Config = "C:\ProgramData\OQS\agent.toml"
)
$ErrorActionPreference = "Stop"
if (-not (Test-Path $Exe)) { throw "oqs-agent.exe not found at $Exe" }
if (-not (Test-Path $Config)) { throw "config not found at $Config (copy deploy\agent.example.toml and edit it)" }
New-Item -ItemType Directory -Force -Path "C:\ProgramData\OQS\spool" | Out-Null
sc.exe create oqs-agent binPath= "`"$Exe`" run --service --config `"$Config`"" start= auto DisplayName= "OQS Fleet Monitor agent"
sc.exe failure oqs-agent reset= 86400 actions= restart/5000/restart/5000/restart/60000
sc.exe start oqs-agent

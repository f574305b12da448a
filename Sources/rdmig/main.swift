import RdmigService

RdmigCommand.main()

import { accountDecider, isAccountEvent, type AccountCommand, type AccountEvent, type AccountState } from '../domain/account.js';
import { customerDecider, isCustomerEvent, type CustomerCommand, type CustomerEvent, type CustomerState } from '../domain/customer.js';
import { emailReservationDecider, type EmailReservationCommand, type EmailReservationEvent, type EmailReservationState } from '../domain/emailReservation.js';
import { isTransferEvent, transferDecider, type TransferCommand, type TransferEvent, type TransferState } from '../domain/transfer.js';
import type { EventStore } from '../eventstore/port.js';
import { CommandHandler, type CommandHandlerOptions } from './commandHandler.js';

/** One command handler per aggregate kind, shared by the HTTP routes and the process manager. */
export interface WriteSide {
  customers: CommandHandler<CustomerState, CustomerCommand, CustomerEvent>;
  emails: CommandHandler<EmailReservationState, EmailReservationCommand, EmailReservationEvent>;
  accounts: CommandHandler<AccountState, AccountCommand, AccountEvent>;
  transfers: CommandHandler<TransferState, TransferCommand, TransferEvent>;
}

export function createWriteSide(store: EventStore, options: Pick<CommandHandlerOptions, 'retryLimit' | 'rememberedPerStream'>): WriteSide {
  return {
    customers: new CommandHandler(store, customerDecider, isCustomerEvent, options),
    emails: new CommandHandler(store, emailReservationDecider, (event) => event.type === 'CustomerEmailReserved', options),
    accounts: new CommandHandler(store, accountDecider, isAccountEvent, options),
    transfers: new CommandHandler(store, transferDecider, isTransferEvent, options),
  };
}
